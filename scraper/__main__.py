try:
    from scraper.cli import main
except KeyboardInterrupt:  # Ctrl-C while the framework imports: nothing has started yet
    raise SystemExit(130) from None

raise SystemExit(main())
