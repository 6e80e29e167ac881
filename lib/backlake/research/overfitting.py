"""How likely is a backtest's best result just luck? PBO (CSCV) and the deflated Sharpe ratio.

- :func:`probability_of_backtest_overfitting`: combinatorially symmetric cross-validation
  (Bailey, Borwein, Lopez de Prado, Zhu, "The Probability of Backtest Overfitting", 2015).
- :func:`deflated_sharpe_ratio`: the probability that the true Sharpe ratio is above the
  Sharpe expected from the best of ``n_trials`` unskilled trials (Bailey & Lopez de Prado,
  "The Deflated Sharpe Ratio", 2014).

Every Sharpe ratio here is **per period** (per bar, not annualised): mean / std (ddof=1) of
per-bar returns, risk-free rate 0. Pure numpy plus ``statistics.NormalDist`` (no scipy).

Example::

    pbo = probability_of_backtest_overfitting(returns)   # returns: (n_bars, n_trials)
    pbo.pbo                                              # 0.0 .. 1.0
    deflated_sharpe_ratio(0.158, 1250, 100, 0.002, -3.0, 10.0)  # 0.9004 (the paper's example)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from backlake.errors import ConfigError
from backlake.metrics import denoise_std

__all__ = [
    "PboResult", "probability_of_backtest_overfitting", "deflated_sharpe_ratio",
    "deflated_sharpe_from_returns", "expected_max_sharpe", "per_period_sharpe",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
_CHUNK = 2048  # CSCV splits per vectorised batch


@dataclass(frozen=True)
class PboResult:
    """``pbo``: share of the CSCV splits whose in-sample best trial ranks at or below the
    out-of-sample median (``logit <= 0``), 0..1. ``logits``: ln(w / (1 - w)) per split, w the
    relative OOS rank (rank / (n_trials + 1)) of the IS-best trial. ``n_combinations``: splits
    evaluated."""

    pbo: float
    logits: np.ndarray
    n_combinations: int


def probability_of_backtest_overfitting(
    returns: np.ndarray, n_blocks: int = 16, *, max_combinations: int = 12_870, seed: int = 0
) -> PboResult:
    """PBO of choosing the best of ``n_trials`` strategies by in-sample Sharpe (CSCV).

    ``returns``: per-bar returns (fractions), shape ``(n_bars, n_trials)``, one column per
    trial over the same bars. The rows are cut into ``n_blocks`` equal blocks (the
    ``n_bars % n_blocks`` earliest rows are dropped). For every choice of ``n_blocks / 2``
    blocks as in-sample (the rest out-of-sample) the trial with the best IS Sharpe is taken
    (first on ties) and ranked among the OOS Sharpes (1 = worst, ties averaged). A trial with
    zero variance in a half has Sharpe 0 there. When C(n_blocks, n_blocks/2) exceeds
    ``max_combinations`` a seeded random sample of that many distinct splits is used
    (C(16, 8) = 12,870 run in full).

    Example::

        rng = np.random.default_rng(0)
        probability_of_backtest_overfitting(rng.normal(0, 0.01, (1000, 20))).pbo  # ~0.5
    """
    r = _check_returns(returns)
    _check_blocks(n_blocks, r.shape[0])
    if isinstance(max_combinations, bool) or not isinstance(max_combinations, int) or max_combinations < 1:
        raise ConfigError(f"max_combinations={max_combinations!r} must be a whole number >= 1, e.g. 12870")
    size = r.shape[0] // n_blocks
    blocks = r[r.shape[0] - size * n_blocks :].reshape(n_blocks, size, r.shape[1])
    s1, s2 = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # (n_blocks, n_trials)
    is_mask = _split_masks(n_blocks, max_combinations, seed)  # (n_comb, n_blocks) of 0/1
    n_half = size * (n_blocks // 2)
    logits = np.empty(is_mask.shape[0])
    for lo in range(0, is_mask.shape[0], _CHUNK):  # bounded memory for many trials
        m = is_mask[lo : lo + _CHUNK]
        sr_is = _sharpe_from_sums(m @ s1, m @ s2, n_half)
        sr_oos = _sharpe_from_sums((1 - m) @ s1, (1 - m) @ s2, n_half)
        best = np.argmax(sr_is, axis=1)
        chosen = sr_oos[np.arange(best.size), best][:, None]
        rank = (sr_oos < chosen).sum(axis=1) + 0.5 * ((sr_oos == chosen).sum(axis=1) + 1)
        w = rank / (r.shape[1] + 1)
        logits[lo : lo + _CHUNK] = np.log(w / (1.0 - w))
    return PboResult(pbo=float(np.mean(logits <= 0)), logits=logits, n_combinations=int(logits.size))


def logit_distribution(result: PboResult) -> dict[str, float]:
    """The CSCV logits as a distribution: each distinct logit (``%.6g``) -> share of the splits
    with it. Logits are ln(w / (1 - w)) of a rank among ``n_trials`` (half steps on ties), so
    there are at most ``2 n_trials`` distinct values; PBO is the share at or below 0."""
    if result.logits.size == 0:
        return {}
    values, counts = np.unique(np.round(result.logits, 9), return_counts=True)
    return {f"{v:.6g}": float(c) / float(result.logits.size) for v, c in zip(values, counts, strict=True)}


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe of ``n_trials`` unskilled trials whose
    Sharpes have variance ``sharpe_variance``:
    ``sqrt(V) * ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e)))``, g = Euler-Mascheroni.
    One trial: 0 (nothing was selected)."""
    _check_int("n_trials", n_trials, 1, "the number of trials tried, e.g. 100")
    _check_number("sharpe_variance", sharpe_variance, 0.0, "a variance of per-period Sharpes, e.g. 0.002")
    if n_trials == 1:
        return 0.0
    g = EULER_GAMMA
    z = (1 - g) * _NORMAL.inv_cdf(1 - 1 / n_trials) + g * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * z


def deflated_sharpe_ratio(
    sharpe: float, n_obs: int, n_trials: int, sharpe_variance: float, skew: float, kurtosis: float
) -> float:
    """DSR, a probability in [0, 1]: ``Z((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1)/4 SR^2))``.

    ``sharpe``: the selected trial's per-period Sharpe (not annualised); ``n_obs``: T, its
    number of returns; ``n_trials``: N, trials tried; ``sharpe_variance``: V, the variance of
    the trials' per-period Sharpes; ``skew`` and ``kurtosis`` of the selected trial's returns,
    kurtosis non-excess (3 for a normal). SR0 is :func:`expected_max_sharpe`.

    Example (the paper's: annual SR 2.5 over 5 years of 250 days, 100 trials, annual V 0.5)::

        deflated_sharpe_ratio(2.5 / 250**0.5, 1250, 100, 0.5 / 250, -3.0, 10.0)  # 0.9004
    """
    _check_number("sharpe", sharpe, None, "a per-period Sharpe ratio, e.g. 0.1")
    _check_int("n_obs", n_obs, 2, "the number of returns behind the Sharpe, e.g. 1250")
    _check_number("skew", skew, None, "the skewness of the returns, e.g. 0.0")
    _check_number("kurtosis", kurtosis, 1.0, "the non-excess kurtosis (3 for a normal; add 3 to an excess kurtosis)")
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        raise ConfigError(
            f"1 - skew*sharpe + (kurtosis-1)/4*sharpe^2 = {denom:.4g} <= 0 for sharpe={sharpe}, skew={skew}, "
            f"kurtosis={kurtosis}: pass a per-period (not annualised) Sharpe and non-excess kurtosis"
        )
    return _NORMAL.cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def deflated_sharpe_from_returns(best_returns: np.ndarray, all_trial_sharpes: np.ndarray) -> float:
    """DSR of the selected trial from its per-bar returns, given every trial's per-period
    Sharpe (the selected one included). N = len(all_trial_sharpes), V their sample variance
    (ddof=1; 0 for one trial); skew and kurtosis are the population moments of
    ``best_returns``.

    Example::

        deflated_sharpe_from_returns(best_r, np.array([per_period_sharpe(c) for c in trials]))
    """
    r = np.asarray(best_returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.isfinite(r).all():
        raise ConfigError(f"best_returns needs at least 2 finite per-bar returns (got shape {r.shape})")
    sharpes = np.asarray(all_trial_sharpes, dtype=np.float64).ravel()
    if sharpes.size < 1 or not np.isfinite(sharpes).all():
        raise ConfigError("all_trial_sharpes needs at least one finite per-period Sharpe (one per trial)")
    sr = per_period_sharpe(r)
    if sr is None:
        raise ConfigError("best_returns has zero variance: its Sharpe ratio (and DSR) is undefined")
    dev = r - r.mean()
    m2 = float(np.mean(dev**2))
    skew, kurt = float(np.mean(dev**3)) / m2**1.5, float(np.mean(dev**4)) / m2**2
    var = float(np.var(sharpes, ddof=1)) if sharpes.size > 1 else 0.0
    return deflated_sharpe_ratio(sr, r.size, int(sharpes.size), var, skew, kurt)


def per_period_sharpe(returns: np.ndarray) -> float | None:
    """mean / std (ddof=1) of per-bar returns, not annualised; None below 2 returns or at zero
    variance."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return None
    sd = float(denoise_std(float(np.std(r, ddof=1)), float(np.max(np.abs(r)))))
    if sd == 0:  # zero, or rounding noise
        return None
    return float(np.mean(r)) / sd


# ---------------------------------------------------------------------------------------------


def _sharpe_from_sums(s1: np.ndarray, s2: np.ndarray, n: int) -> np.ndarray:
    mean = s1 / n
    var = np.maximum(s2 - n * mean**2, 0.0) / (n - 1)
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        # sums of squares lose ~8 digits: a deviation below 1e-7 of the RMS is zero variance
        return np.where(sd > 1e-7 * np.sqrt(s2 / n), mean / sd, 0.0)


def _split_masks(n_blocks: int, limit: int, seed: int) -> np.ndarray:
    half = n_blocks // 2
    if math.comb(n_blocks, half) <= limit:
        combos = list(itertools.combinations(range(n_blocks), half))
    else:
        rng = np.random.default_rng(seed)
        seen: set[tuple[int, ...]] = set()
        while len(seen) < limit:
            seen.add(tuple(sorted(rng.choice(n_blocks, half, replace=False).tolist())))
        combos = sorted(seen)
    mask = np.zeros((len(combos), n_blocks), dtype=np.float64)
    for i, c in enumerate(combos):
        mask[i, list(c)] = 1.0
    return mask


def _check_returns(returns: np.ndarray) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ConfigError(f"returns must be 2-D (n_bars, n_trials), got shape {r.shape}: one column per trial")
    if r.shape[1] < 2:
        raise ConfigError(f"returns has {r.shape[1]} trial column(s): PBO compares trials, give at least 2")
    bad = ~np.isfinite(r)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"returns has a NaN/inf at row {row}, trial {col}: fill or drop those bars first")
    return r


def _check_blocks(n_blocks: int, n_bars: int) -> None:
    _check_int("n_blocks", n_blocks, 2, "an even number of blocks >= 2, e.g. 16")
    if n_blocks % 2:
        raise ConfigError(f"n_blocks={n_blocks} must be even (half the blocks are in-sample), e.g. {n_blocks + 1}")
    if n_bars < 2 * n_blocks:
        raise ConfigError(
            f"n_blocks={n_blocks} needs at least {2 * n_blocks} bars (2 per block) but returns has {n_bars}: "
            "use fewer blocks or more bars"
        )


def _check_int(name: str, value: object, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {minimum}: {fix}")


def _check_number(name: str, value: object, minimum: float | None, fix: str) -> None:
    ok = (
        isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
        and math.isfinite(value) and (minimum is None or value >= minimum)
    )
    if not ok:
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(f"{name}={value!r} must be a finite number{bound}: {fix}")
