from fdscope.cli.main import main

main()
