from insilico.cli import main

main()
