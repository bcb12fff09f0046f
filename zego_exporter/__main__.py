"""`python -m zego_exporter`: the same entry point as the `zego-exporter` console script."""

from zego_exporter.cli import main

if __name__ == "__main__":
    main()
