"""Dashboard tests: pilot tests with a fake source, SVG snapshots, tmux end-to-end."""
