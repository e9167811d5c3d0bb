"""The `waymark` command line (typer): `dev`, `api`, `worker`, `db`, `workspaces`, `keys`, ..."""
