from afterimage.cli import main

main()
