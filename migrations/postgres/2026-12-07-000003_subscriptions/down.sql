DROP TABLE subscription_claims;
DROP TABLE subscriptions;
