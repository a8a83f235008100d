from lmserve.cli import main

main()
