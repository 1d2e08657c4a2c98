from ledgerx._entry import main

raise SystemExit(main())
