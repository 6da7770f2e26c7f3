"""One module per ``qnoise`` command; see `qnoise.cli`."""
