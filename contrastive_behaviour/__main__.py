"""``python -m contrastive_behaviour ...``: the same as the ``contrastive-behaviour`` command."""

import sys

from contrastive_behaviour import main

sys.exit(main())
