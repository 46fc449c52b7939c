from selectit.cli import main

main()
