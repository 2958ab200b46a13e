"""Small helpers every stage uses: atomic file writes, torch threads that follow the machine's load."""
