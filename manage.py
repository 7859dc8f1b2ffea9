#!/usr/bin/env python
"""Django's command-line utility for HKMS.

A configuration error (a missing or malformed environment variable) is one
line on stderr and exit status 1, not a traceback.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hkms_site.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
