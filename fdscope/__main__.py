from fdscope.cli.entry import main

main()
