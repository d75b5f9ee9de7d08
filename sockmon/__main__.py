from sockmon.cli import main

raise SystemExit(main())
