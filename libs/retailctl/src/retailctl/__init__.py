"""retailctl: the operator CLI of the retail suite (`retailctl --help`)."""
