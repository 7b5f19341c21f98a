from maomao_cli.cli.main import main

main()
