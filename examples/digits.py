"""Digits (scikit-learn's load_digits, 1797 x 64) with 50 % of the pixels removed:
RMSE on the removed pixels versus rank, each fit stopped on a validation share of the
observed pixels (MatrixCompletion(validation_fraction=0.1)).

    pip install "lowrank-core[examples]"
    python examples/digits.py

The same run is ``lowrank-core reproduce digits``.
"""

from lowrank_core.experiments.realdata import digits_run


def main():
    run = digits_run(log=None)
    print(f"{'rank':>4} {'reg':>5} {'held-out RMSE':>13} {'validation RMSE':>15} "
          f"{'iterate':>7}  status")
    for rank, held, val, best, status, reg in run["rows"]:
        print(f"{rank:4d} {reg:5g} {held:13.4f} {val:15.4f} {best:7d}  {status}")
    print(f"column-mean imputation: held-out RMSE {run['column_mean_rmse']:.4f}")


if __name__ == "__main__":
    main()
