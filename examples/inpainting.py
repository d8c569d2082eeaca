"""Inpainting the camera image: 70 % of the pixels removed at random, completed by
MatrixCompletion with each method and by a plain numpy softImpute (Mazumder, Hastie,
Tibshirani 2010) in the same run; PSNR on the removed pixels and a figure.

    pip install "lowrank-core[examples]"
    python examples/inpainting.py [--size 512] [--rank 40] [--reg 0.3] [--out inpainting.png]

The same run is ``lowrank-core reproduce inpainting`` (CSV tables and the figure).
"""

import argparse

import numpy as np

from lowrank_core.experiments.realdata import INPAINTING_METHODS, inpainting_run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="image side (camera is 512)")
    p.add_argument("--rank", type=int, default=40)
    p.add_argument("--reg", type=float, default=0.3)
    p.add_argument("--methods", default=",".join(INPAINTING_METHODS))
    p.add_argument("--out", default="inpainting.png")
    args = p.parse_args()
    run = inpainting_run(size=args.size, rank=args.rank, reg=args.reg,
                         methods=args.methods.split(","), log=print)
    print(f"{'method':<12} {'PSNR (dB)':>9} {'seconds':>8} {'iterations':>10}")
    for method, value, seconds, iterations, status in run["rows"]:
        print(f"{method:<12} {value:9.2f} {seconds:8.1f} {iterations:10d}  {status}")
    si = run["soft_impute"]
    print(f"{'softImpute':<12} {si['psnr']:9.2f} {si['seconds']:8.1f}  (best lambda = "
          f"{si['lambda_ratio']:.3g} lambda_max, rank {si['rank']})")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    best = max(run["rows"], key=lambda r: r[1])[0]
    panels = [("original", run["image"]),
              ("observed (30 %)", np.where(run["mask"], run["image"], np.nan)),
              (f"{best}, rank {args.rank}", run["outputs"][best]),
              ("softImpute", si["output"])]
    fig, axes = plt.subplots(1, 4, figsize=(14, 4))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
