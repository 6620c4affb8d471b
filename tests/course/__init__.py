"""Course-wide checks: README blocks, first commands, mistakes, layout, plumbing."""
