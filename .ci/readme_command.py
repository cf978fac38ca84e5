"""Print quick-start command N of README.md (the line after the ``# N.`` comment), so CI runs what the README says."""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text(encoding="utf-8")
section = text.split("## Quick start", 1)[1]
block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()
n = sys.argv[1]
for i, line in enumerate(block):
    if line.startswith(f"# {n}."):
        print(block[i + 1].strip())
        sys.exit(0)
sys.exit(f"README.md: no quick-start command {n}")
