"""The kernel socket table: netlink dumps, owners, diffs, transitions, the collector."""
