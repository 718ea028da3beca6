DROP TABLE ds_producers;
DROP TABLE ds_messages;
DROP TABLE ds_streams;
