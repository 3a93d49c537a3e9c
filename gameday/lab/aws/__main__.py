from gameday.lab.aws.proxy import main

main()
