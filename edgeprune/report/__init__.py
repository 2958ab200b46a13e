"""What people look at: the demo's HTML/Markdown report, its figures, training plots, and the one table formatter
every printed table uses."""
