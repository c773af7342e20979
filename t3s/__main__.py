from t3s.cli import main

main()
