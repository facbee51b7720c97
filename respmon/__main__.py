from respmon.cli import main

raise SystemExit(main())
