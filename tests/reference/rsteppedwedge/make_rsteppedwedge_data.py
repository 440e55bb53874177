"""Derive the contract-format dataset from R steppedwedge's ``sw_data_example``.

Run from this directory: ``python make_rsteppedwedge_data.py && Rscript generate.R``.
Reads ``data/rsteppedwedge_sw_data_example.csv`` (GPL-3, see README.md) and writes
``data/sw_data_example_lmm.csv`` with columns ``cluster, period, treatment, y,
exposure_time`` (``y`` = ``outcome_cont``; ``exposure_time`` = periods since the
cluster's first treated period, counting that period as 1; 0 before).
Guarded by ``__main__`` so that ``pytest --doctest-modules`` can import it safely.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def derive(raw: pd.DataFrame) -> pd.DataFrame:
    """Rename to the fixture contract's columns and add ``exposure_time``."""
    first = raw.loc[raw["trt"] == 1].groupby("cluster")["period"].min()
    start = raw["cluster"].map(first)
    exposure = (raw["period"] - start + 1).where(raw["period"] >= start, 0)
    return pd.DataFrame(
        {
            "cluster": raw["cluster"].astype(int),
            "period": raw["period"].astype(int),
            "treatment": raw["trt"].astype(int),
            "y": raw["outcome_cont"],
            "exposure_time": exposure.fillna(0).astype(int),
        }
    )


def main() -> None:
    raw = pd.read_csv(HERE / "data" / "rsteppedwedge_sw_data_example.csv")
    out = derive(raw)
    assert ((out["exposure_time"] > 0) == (out["treatment"] == 1)).all()
    out.to_csv(HERE / "data" / "sw_data_example_lmm.csv", index=False, lineterminator="\n")
    print(f"sw_data_example_lmm.csv: {len(out)} rows")


if __name__ == "__main__":
    main()
