from lab.aws.proxy import main

main()
