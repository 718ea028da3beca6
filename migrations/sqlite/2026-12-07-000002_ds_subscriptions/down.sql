DROP TABLE ds_signing_keys;
DROP TABLE ds_subscription_streams;
DROP TABLE ds_subscriptions;
