DROP TABLE mercure_updates;
