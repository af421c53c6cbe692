"""Package data: trained director adapters shipped with FlowSteer."""
