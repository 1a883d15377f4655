"""Mobile push: clients for the providers (FCM, APNs) that wake an agent's phone when a
conversation needs them, and the sealing of the provider credentials an organization stores."""
