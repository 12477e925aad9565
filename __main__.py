"""`python -m ifa`: the same as the `ifa` console script."""

from .cli.entry import main

main()
