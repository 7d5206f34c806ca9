from keyops.cli.main import run

run()
