"""``python -m intcore``: the installation report and native-vs-portable self-check."""

import sys

from intcore.doctor import main

sys.exit(main(sys.argv[1:]))
