from t3s.cli.main import main

main()
