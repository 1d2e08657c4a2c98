from ledgerx.cli import main

raise SystemExit(main())
