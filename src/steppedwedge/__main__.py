"""Allow ``python -m steppedwedge``."""

from .cli import main

raise SystemExit(main())
