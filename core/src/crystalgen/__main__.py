"""``python -m crystalgen`` (also what torchrun launches: ``torchrun -m crystalgen train ...``)."""

from crystalgen.cli.main import main

raise SystemExit(main())
