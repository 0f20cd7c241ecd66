"""``python -m llmlab …``: the same command line as the ``llmlab`` script."""
import sys

from .cli import main

sys.exit(main())
