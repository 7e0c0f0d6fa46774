"""What users run on their side: the browser JS client (js/) and the baton CLI (cli/)."""
