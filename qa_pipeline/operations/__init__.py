"""Running it as a production deployment: deliveries start runs (`raw_deliveries`), failures and an
overdue month are told (`alerts`), and the publication deadline is a check (`freshness`)."""
