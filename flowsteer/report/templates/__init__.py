"""Package data of the HTML report: the page skeleton and its stylesheet."""
