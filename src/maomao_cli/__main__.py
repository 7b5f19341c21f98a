from maomao_cli.cli.app import main

main()
