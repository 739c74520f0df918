"""`python -m finetune ...` (what `accelerate launch -m finetune train ...` runs): the same as `gaea finetune ...`."""

import sys

from gaea.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
