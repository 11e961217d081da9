"""Depth evaluation refuses bad inputs in plain words: invalid predictions, pickled ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from featdepth.evaluation.depth_metrics import evaluate_depth, evaluate_depth_image, load_gt_depths, load_predictions


def _gt_pred(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(2.0, 50.0, (12, 16))
    return gt, gt * rng.uniform(0.8, 1.2, gt.shape)


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite"), (-2.0, "negative")])
def test_invalid_predictions_are_an_error_naming_source_and_count(bad, kind):
    gt, pred = _gt_pred()
    pred[3, 4:7] = bad
    with pytest.raises(ValueError, match=rf"^preds\.npy: image 1: 3 of 192 predicted values are NaN, infinite or negative \(3 {kind}\)"):
        evaluate_depth([gt, gt], [gt.copy(), pred], protocol="uncropped", source="preds.npy")
    with pytest.raises(ValueError, match=r"3 of 192 .*invalid_predictions='mask'"):
        evaluate_depth_image(gt, pred, protocol="uncropped")


def test_invalid_predictions_masked_on_request_and_counted():
    gt, pred = _gt_pred()
    pred[3, 4:7] = np.nan
    pred[0, 0] = -1.0
    res = evaluate_depth([gt], [pred], protocol="uncropped", scaling=None, invalid_predictions="mask")
    assert res.num_masked_predictions == 4 and res.masked_per_image == [4]
    assert res.as_dict()["num_masked_predictions"] == 4 and "4 GT pixels masked" in str(res)
    keep = np.ones(gt.shape, bool)
    keep[3, 4:7] = keep[0, 0] = False
    # the same numbers as evaluating only the pixels with a valid prediction (same-size maps: no resize)
    gt_masked = np.where(keep, gt, 0.0)
    ref = evaluate_depth([gt_masked], [np.where(keep, pred, 1.0)], protocol="uncropped", scaling=None)
    assert res.metrics == pytest.approx(ref.metrics, rel=1e-12)
    # everything invalid: nothing left, said plainly
    with pytest.raises(ValueError, match=r"no pixel left to evaluate: 192 of 192"):
        evaluate_depth([gt], [np.full_like(gt, np.nan)], protocol="uncropped", invalid_predictions="mask")
    with pytest.raises(ValueError, match="invalid_predictions must be 'error' or 'mask'"):
        evaluate_depth([gt], [pred], invalid_predictions="clamp")  # type: ignore[arg-type]


class _CreatesFile:
    """Unpickling this object would create ``target`` (stand-in for arbitrary code)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_payloads_in_npz_and_npy_are_refused_and_not_run(tmp_path):
    target = tmp_path / "pwned.txt"
    data = np.empty(2, dtype=object)
    data[0] = np.ones((3, 4), np.float32)
    data[1] = _CreatesFile(str(target))
    np.savez(tmp_path / "gt_depths.npz", data=data)
    np.save(tmp_path / "preds.npy", data, allow_pickle=True)

    with pytest.raises(ValueError, match=r"gt_depths\.npz: entry 'data' is not a plain array .*refused to load.*open"
                                         r".*featdepth data export-gt"):
        load_gt_depths(tmp_path / "gt_depths.npz")
    assert not target.exists()
    with pytest.raises(ValueError, match=r"gt_depths\.npy|preds\.npy"):
        load_gt_depths(tmp_path / "preds.npy")
    with pytest.raises(ValueError, match=r"preds\.npy"):
        load_predictions(tmp_path / "preds.npy")
    assert not target.exists()

    # the payload is real: NumPy's own pickle loading would have created the file
    with np.load(tmp_path / "gt_depths.npz", allow_pickle=True) as archive:
        archive["data"][1].close()
    assert target.exists()


def test_official_object_array_format_still_loads(tmp_path):
    maps = [np.full((3, 4), 1.5, np.float32), np.full((5, 7), 2.0, np.float32)]
    data = np.empty(2, dtype=object)
    data[0], data[1] = maps
    np.savez_compressed(tmp_path / "gt_depths.npz", data=data)
    out = load_gt_depths(tmp_path / "gt_depths.npz")
    assert [m.shape for m in out] == [(3, 4), (5, 7)] and out[1][0, 0] == 2.0 and out[0].dtype == np.float32
