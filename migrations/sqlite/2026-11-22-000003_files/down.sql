DROP TABLE file_versions;
DROP TABLE files;
