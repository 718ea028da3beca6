DROP TABLE work_item_comments;
DROP TABLE work_item_links;
DROP TABLE work_items;
