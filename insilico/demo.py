"""`make demo`: run the dose-ranging example trial and print its per-arm summary."""
from __future__ import annotations

import sys
from pathlib import Path

from insilico.cli import app

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    spec = ROOT / "trials" / "dose_ranging.yaml"
    out = ROOT / "results" / "dose_ranging.zarr"
    sys.argv = ["insilico", "run", str(spec), "--out", str(out), "--overwrite"]
    app()


if __name__ == "__main__":
    main()
