from research_mcp.cli import main

raise SystemExit(main())
