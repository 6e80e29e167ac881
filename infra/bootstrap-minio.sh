#!/bin/sh
# Create the lake bucket on MinIO (idempotent). Run by the lake-bootstrap service.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/${BACKLAKE_BUCKET}"
echo "bucket ${BACKLAKE_BUCKET} ready"
