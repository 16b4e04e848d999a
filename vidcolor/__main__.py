from vidcolor.entry import main

main()
